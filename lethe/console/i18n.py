"""English and French for the console and the privacy centre.

Messages are keyed by their English text (gettext style); `FR` holds the French. A unit test
checks that every message the templates use has its French, so a page never mixes languages.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from lethe.console.messages_en import EN
from lethe.console.messages_fr import FR

LANGUAGES = ("en", "fr")
LANG_COOKIE = "lethe_lang"

Translate = Callable[..., str]


def language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LANGUAGES:
        return cookie
    header = request.headers.get("accept-language", "")
    for part in header.split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"


def translator(lang: str) -> Translate:
    def translate(message: str, **values: object) -> str:
        text = (FR.get(message) if lang == "fr" else None) or EN.get(message, message)
        return text.format(**values) if values else text

    return translate
