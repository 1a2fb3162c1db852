"""steps.metadata.record: metadata on the running step inside a run, the ``steps`` log outside one."""

import logging
from types import SimpleNamespace

import steps.metadata as module
from steps.metadata import record


def test_outside_a_run_the_metadata_goes_to_the_log(caplog, monkeypatch):
    monkeypatch.setattr(module, "log_metadata", lambda **kw: (_ for _ in ()).throw(AssertionError("no step running")))
    with caplog.at_level(logging.INFO, logger="steps"):
        record({"best_arm": "bm25_root_2"})
    assert "metadata (no step running): {'best_arm': 'bm25_root_2'}" in caplog.text


def test_inside_a_step_it_is_logged_as_step_metadata(monkeypatch):
    logged = []
    monkeypatch.setattr(module.StepContext, "get", classmethod(lambda cls: SimpleNamespace()))
    monkeypatch.setattr(module, "log_metadata", lambda metadata: logged.append(metadata))
    record({"rows": 12})
    assert logged == [{"rows": 12}]
