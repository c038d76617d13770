"""What `pollerd check` and `pollerd render` ask of a user's template folder: every file
compiles (`syntax_problems`, also run when the config loads), and every event × locale ×
flavour renders the sample events without error (`problems`), as `file:line: Error: message`.

The checks use the same lookup and the same fitting as sending (`loader`, `fit`), so a
template that passes here does not fall back to the built-in one at send time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jinja2 import TemplateError

from pollerd.templates.context import context, digest_context
from pollerd.templates.fit import RENDER_ERRORS, shrink, where
from pollerd.templates.format import LOCALES
from pollerd.templates.loader import FLAVOURS, Templates, builtin_templates


def syntax_problems(templates: Templates) -> list[str]:
    """`file:line: error` for every user template that does not compile."""
    if templates.folder is None:
        return []
    found: list[str] = []
    env = templates.env("text")
    for path in sorted(templates.folder.rglob("*.j2")):
        name = path.relative_to(templates.folder).as_posix()
        try:
            env.get_template(name)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            found.append(f"{path}" + (f":{line}" if line else "") + f": {exc}")
    return found


def problems(templates: Templates, samples: Iterable[dict[str, Any]]) -> list[str]:
    """Every user template that does not compile, or fails to render one of `samples`
    (one event JSON per type; the digest is built from them) in any locale and flavour,
    as `file:line: Error: message`: `pollerd check` prints these."""
    found = syntax_problems(templates)
    if found or templates.folder is None:
        return found
    events = [s for s in samples if s.get("type") != "digest"]
    # Every combination, not only those whose event template is the user's: a user
    # layout or include fails under a built-in event template too. The digest is the
    # samples' digest.
    for kind in [*dict.fromkeys(str(s.get("type")) for s in events), "digest"]:
        sample = next((s for s in events if s.get("type") == kind), None)
        for flavour in FLAVOURS:
            for locale in LOCALES:
                try:
                    template = templates.find(kind, locale, flavour)
                    if sample is None:  # lines from the built-in titles: each event's
                        # own template is checked (and reported) on its own
                        values = digest_context(
                            builtin_templates(),
                            events,
                            locale=locale,
                            timezone="UTC",
                            flavour=flavour,
                        )
                    else:
                        values = context(sample, locale=locale, timezone="UTC")
                    shrink(template, values, flavour, locale, None, None)
                except RENDER_ERRORS as exc:  # what `Templates._fit` falls back from at send time
                    problem = f"{where(exc, kind)}: {type(exc).__name__}: {exc}"
                    if problem not in found:
                        found.append(problem)
    return found
