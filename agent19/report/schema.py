"""The JSON Schema of ``handoff.json``, generated from :class:`~agent19.report.model.Handoff`.

The schema ships in the package (``agent19/report/handoff.schema.json``) and is published beside
the handoffs (``handoffs/handoff.schema.json``). After changing the model, regenerate both:

    python -m agent19.report.schema

A test fails when the committed files differ from the model.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from agent19.report.model import HANDOFF_FORMAT, Handoff

SCHEMA_ID = "urn:agent19:handoff:2"


def handoff_schema() -> dict[str, Any]:
    schema = Handoff.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": f"agent19 handoff ({HANDOFF_FORMAT})", **{k: v for k, v in schema.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(handoff_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema() -> dict[str, Any]:
    """The schema file installed with the package."""
    return json.loads(resources.files("agent19.report").joinpath("handoff.schema.json").read_text("utf-8"))


def main() -> None:
    package = Path(__file__).with_name("handoff.schema.json")
    published = Path(__file__).parents[2] / "handoffs" / "handoff.schema.json"
    for path in (package, published):
        path.write_text(schema_text(), encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
