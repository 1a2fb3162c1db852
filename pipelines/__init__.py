"""ZenML pipelines, one @pipeline per method.

Run one with ``zenml pipeline run pipelines.<module>.<name> -c configs/<name>.yaml``.
"""

import sys
from pathlib import Path

# `zenml pipeline run pipelines.<module>.<name> -c <file>` imports this package first: check the whole run config
# now, so a misplaced section or a misspelled key stops the command with our one-line messages (exit status 2).
# (Imported only in the zenml CLI, so `python -m cli.config_check` does not import its own module twice.)
if sys.argv and Path(sys.argv[0]).name == "zenml":
    from cli.config_check import check_cli_run

    check_cli_run(sys.argv)
