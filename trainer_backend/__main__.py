import sys

from .cli import main

try:
    code = main()
except ValueError as exc:
    # a bad LORA_STUDIO_* value: its message names the variable and what it takes; no traceback
    # (looked up, not imported: a command that never read its settings pays nothing for this)
    settings = sys.modules.get("trainer_backend.settings")
    if settings is None or not isinstance(exc, settings.SettingsError):
        raise
    print(f"error: {exc}", file=sys.stderr)
    code = 2  # ExitCode.INVALID
sys.exit(code)
