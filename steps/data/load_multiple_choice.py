from typing import Annotated

from zenml import step

from finetune.data.arc import read_multiple_choice, to_arc_record
from finetune.params import MultipleChoiceDataParams
from steps.metadata import record


@step
def load_multiple_choice(
    mc_data: MultipleChoiceDataParams, mc_fingerprints: dict[str, str]
) -> tuple[Annotated[list[dict], "mc_train"], Annotated[list[dict], "mc_test"]]:
    """Read the ARC-layout question files strictly; questions travel as ARC records (readable JSON artifacts).

    ``mc_fingerprints`` is unused in the body: it is an input so the cache follows the files' bytes.
    """
    train, test = read_multiple_choice(mc_data)
    record({"mc_train_questions": len(train), "mc_test_questions": len(test),
            "mc_test_choices": sum(len(q.choices) for q in test)})
    return [to_arc_record(q) for q in train], [to_arc_record(q) for q in test]
