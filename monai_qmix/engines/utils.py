# Copyright (c) monai_qmix contributors.
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
# compliance with the License. You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software distributed under the License is
# distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
"""Small helpers shared by the engines."""

from __future__ import annotations

from typing import Any

from monai.utils import StrEnum, look_up_option

__all__ = ["choose_option"]


def choose_option(value: Any, options: type[StrEnum], name: str) -> str:
    """``look_up_option`` with an error message that names the parameter.

    Args:
        value: the user's choice.
        options: the allowed values.
        name: the parameter name for the error message.

    Returns:
        The matching option's string value.

    Raises:
        ValueError: ``"<name>: <value> is not a valid option; expected one of [...]"``.
    """
    try:
        return str(look_up_option(value, options))
    except ValueError as e:
        raise ValueError(
            f"{name}: {value!r} is not a valid option; expected one of {[o.value for o in options]}."
        ) from e
