"""The one exception every settings problem raises."""

from __future__ import annotations

import pulumi


class SettingsError(ValueError, pulumi.RunError):
    """A settings file is invalid; the message names the file, the key path and what was expected.

    ``environments/staging.yaml: broker.replicas: expected an integer from 1 to 9, got 'three'``

    A ``pulumi.RunError`` too: raised in the program, the engine shows this one line as the
    error rather than a Python traceback.
    """

    def __init__(self, file: str, key_path: str, message: str) -> None:
        self.file = file
        self.key_path = key_path
        self.detail = message
        super().__init__(f"{file}: {key_path}: {message}")
