"""The journey stages of a deployment, read from knowledge/stages.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml


class StageConfigError(ValueError):
    """stages.yaml is missing or malformed."""


@dataclass(frozen=True)
class Stage:
    """One journey stage with its description, next step and labelled examples."""

    name: str
    label: str
    description: str
    next_step: str
    examples: tuple[str, ...]
    before_purchase: bool = False


@dataclass(frozen=True)
class PageRule:
    """A URL or title pattern that hints at a stage (weight: added to the stage's logit)."""

    pattern: str
    stage: str
    weight: float

    def matches(self, url: str, title: str) -> bool:
        """True when the pattern occurs in the page URL or title (case-insensitive)."""
        needle = self.pattern.lower()
        return needle in url.lower() or needle in title.lower()


@dataclass(frozen=True)
class JourneyConfig:
    """Stages in journey order plus page rules."""

    stages: tuple[Stage, ...]
    page_rules: tuple[PageRule, ...]
    neutral: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """Stage names in journey order."""
        return [s.name for s in self.stages]

    def get(self, name: str) -> Stage:
        """The stage called name."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


_NAME = re.compile(r"^[a-z][a-z0-9_-]{1,39}$")


def load_journey(path: Path) -> JourneyConfig:
    """Read and check a stages file (stages in order, page_rules, neutral small-talk messages)."""
    if not path.is_file():
        raise StageConfigError(f"stage configuration not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise StageConfigError(f"{path}: not valid YAML: {exc}") from exc
    stages = []
    for i, item in enumerate(raw.get("stages") or []):
        name = str(item.get("name", ""))
        if not _NAME.match(name):
            raise StageConfigError(f"{path}: stage #{i + 1} needs a lowercase name, got {name!r}")
        examples = tuple(str(e).strip() for e in item.get("examples") or [] if str(e).strip())
        if not examples:
            raise StageConfigError(f"{path}: stage {name!r} has no examples")
        stages.append(
            Stage(
                name=name,
                label=str(item.get("label") or name.title()),
                description=str(item.get("description") or "").strip(),
                next_step=str(item.get("next_step") or "").strip(),
                examples=examples,
                before_purchase=bool(item.get("before_purchase", False)),
            )
        )
    if len(stages) < 2:
        raise StageConfigError(f"{path}: at least two stages are needed")
    names = {s.name for s in stages}
    if len(names) != len(stages):
        raise StageConfigError(f"{path}: stage names must be unique")
    rules = []
    for item in raw.get("page_rules") or []:
        if item.get("stage") not in names:
            raise StageConfigError(f"{path}: page rule {item!r} names an unknown stage")
        rules.append(PageRule(str(item["pattern"]), item["stage"], float(item.get("weight", 1.0))))
    neutral = tuple(str(n).strip() for n in raw.get("neutral") or [] if str(n).strip())
    return JourneyConfig(stages=tuple(stages), page_rules=tuple(rules), neutral=neutral)
