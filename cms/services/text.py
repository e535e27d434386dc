"""Checks shared by every user-supplied text field."""

from __future__ import annotations

import unicodedata

from cms.services.errors import N_, Errors

_ALLOWED_CONTROLS = {"\n", "\t"}


def clean_text(
    errors: Errors,
    name: str,
    raw: object,
    *,
    label: str,
    max_len: int,
    required: bool = True,
    multiline: bool = False,
) -> str:
    """Normalise line endings and surrounding space; record an error for bad input."""
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        errors.add(name, N_("{label}应为文字"), label=label)
        return ""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not multiline and "\n" in text:
        errors.add(name, N_("{label}不能换行"), label=label)
        return text
    bad = sorted(
        {
            f"U+{ord(ch):04X}"
            for ch in text
            if unicodedata.category(ch) in {"Cc", "Cs", "Co"} and ch not in _ALLOWED_CONTROLS
        }
    )
    if bad:
        errors.add(
            name,
            N_("{label}含有不可见的控制字符（{chars}），请删除后再保存"),
            label=label,
            chars="、".join(bad[:5]),
        )
    if required and not text:
        errors.add(name, N_("请填写{label}"), label=label)
    elif len(text) > max_len:
        errors.add(
            name, N_("{label}最多 {max} 个字（现在 {n} 个）"), label=label, max=max_len, n=len(text)
        )
    return text
