"""Every way a C2PA 2.2 manifest store can say how its pixels were made, read the same way.

A digital source type can sit in an action, in an action *template* (§18.14.6.1: a consumer
"shall take the values from the template and overlay the values from the action itself"), or in
a known vendor parameter (Adobe's ``com.adobe.digitalSourceType``); and it can sit in any
ingredient's own manifest, to any depth: a crop of an AI-generated picture is still AI content.
The store comes from the file's sender, so every field is type-checked and the walk is bounded.

IPTC's vocabulary tells trained from untrained algorithms: ``algorithmicMedia`` is "created
purely by an algorithm not based on any sampled training data", so it is synthetic, not AI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# kind -> IPTC codes. "ai": made with a trained model; "synthetic": made by an algorithm or
# composited from synthetic parts without saying a trained model was involved; "enhanced": an
# algorithm corrected a capture.
KINDS = {
    "ai": ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"),
    "synthetic": ("algorithmicMedia", "compositeSynthetic"),
    "enhanced": ("algorithmicallyEnhanced",),
}
KIND_OF = {code: kind for kind, codes in KINDS.items() for code in codes}
# Parameters vendors use for a source type outside the standard field.
VENDOR_SOURCE_TYPE_PARAMETERS = ("com.adobe.digitalSourceType",)
MAX_DEPTH = 32  # ingredient generations followed
MAX_MANIFESTS = 1000  # ingredient manifests read per file


@dataclass(frozen=True)
class Declaration:
    """One statement of how content was made: where it was found, and how it was expressed."""

    source_type: str  # the full IPTC URI as written
    kind: str  # ai | synthetic | enhanced | other
    action: str
    via: str  # action | template | parameter com.adobe.digitalSourceType
    software_agent: str | None
    ingredient_path: tuple[str, ...] = ()  # titles from the active manifest down; () is the active manifest

    def to_dict(self) -> dict:
        return {**asdict(self), "ingredient_path": list(self.ingredient_path)}


def source_kind(value: object) -> str:
    """``ai``, ``synthetic``, ``enhanced`` or ``other`` for a digital source type URI."""
    text = str(value)
    for prefix in (IPTC, IPTC.replace("http:", "https:")):
        if text.startswith(prefix):
            return KIND_OF.get(text.removeprefix(prefix).rstrip("/"), "other")
    return "other"


def short_name(source_type: str) -> str:
    return source_type.rstrip("/").rsplit("/", 1)[-1]


def as_dict(value: object) -> dict:
    """Manifest JSON comes from the file's sender: anything may be where a mapping belongs."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list:
    return value if isinstance(value, list) else []


def action_assertions(manifest: dict) -> list[dict]:
    return [
        as_dict(assertion.get("data"))
        for assertion in map(as_dict, as_list(manifest.get("assertions")))
        if str(assertion.get("label", "")).startswith("c2pa.actions")
    ]


def effective_actions(manifest: dict) -> list[tuple[dict, str]]:
    """Each action with its template overlaid (the action's own values win), and where its
    source type came from: ``template`` when only the template names one."""
    result = []
    for data in action_assertions(manifest):
        templates: dict[str, dict] = {}
        for template in map(as_dict, as_list(data.get("templates"))):
            templates.setdefault(str(template.get("action")), template)
        for action in filter(lambda a: isinstance(a, dict), as_list(data.get("actions"))):
            template = templates.get(str(action.get("action")), templates.get("*", {}))
            merged = {**template, **action}
            via = "template" if "digitalSourceType" in template and "digitalSourceType" not in action else "action"
            result.append((merged, via))
    return result


def manifest_declarations(manifest: dict, path: tuple[str, ...] = ()) -> list[Declaration]:
    found = []
    for action, via in effective_actions(manifest):
        agent = action.get("softwareAgent")
        agent = as_dict(agent).get("name") if isinstance(agent, dict) else agent
        agent_name = None if agent is None else str(agent)
        name = str(action.get("action"))
        if action.get("digitalSourceType"):
            source = str(action["digitalSourceType"])
            found.append(Declaration(source, source_kind(source), name, via, agent_name, path))
        params = as_dict(action.get("parameters"))
        for key in VENDOR_SOURCE_TYPE_PARAMETERS:
            if params.get(key):
                source = str(params[key])
                found.append(Declaration(source, source_kind(source), name, f"parameter {key}", agent_name, path))
    return found


def history(store: dict, validation_results: dict) -> tuple[list[Declaration], list[dict]]:
    """Declarations of every ingredient manifest below the active one, and each ingredient's record.

    An ingredient's record carries its own validation codes: those the signer recorded when it
    took the ingredient in, and the deltas this reader found (``validation_results.ingredientDeltas``),
    never the active manifest's.
    """
    manifests = as_dict(store.get("manifests"))
    deltas = _ingredient_deltas(validation_results)
    declarations: list[Declaration] = []
    records: list[dict] = []
    seen = {str(store.get("active_manifest"))}
    stack: list[tuple[str, tuple[str, ...]]] = [(str(store.get("active_manifest")), ())]  # iterative: never recurse
    while stack and len(seen) <= MAX_MANIFESTS:
        label, path = stack.pop()
        for ingredient in map(as_dict, as_list(as_dict(manifests.get(label)).get("ingredients"))):
            title = str(ingredient.get("title") or "untitled")
            own_label = str(ingredient.get("active_manifest"))
            own = as_dict(manifests.get(own_label))
            record = _record(ingredient, own, deltas.get((label, str(ingredient.get("label")))), (*path, title))
            records.append(record)
            if not own or own_label in seen:
                continue
            seen.add(own_label)
            own_declarations = manifest_declarations(own, (*path, title))
            declarations.extend(own_declarations)
            record["digital_source_types"] = sorted({d.source_type for d in own_declarations})
            if len(path) + 1 < MAX_DEPTH:
                stack.append((own_label, (*path, title)))
            else:
                record["failures"].append("avow.depthLimit")
    return declarations, records


def _record(ingredient: dict, own: dict, delta: dict | None, path: tuple[str, ...]) -> dict:
    recorded = as_dict(as_dict(ingredient.get("validation_results")).get("activeManifest"))
    now = as_dict(delta)
    passed_now = {str(as_dict(item).get("code")) for item in as_list(now.get("success"))}
    failures = [str(as_dict(item).get("code")) for item in as_list(recorded.get("failure"))]
    # Trust is the reader's call: what the signer's own trust list said at ingestion does not carry over.
    failures = [c for c in failures if c not in passed_now and c != "signingCredential.untrusted"]
    failures += [str(as_dict(item).get("code")) for item in as_list(now.get("failure"))]
    return {
        "title": ingredient.get("title"),
        "relationship": ingredient.get("relationship"),
        "path": list(path),
        "had_manifest": bool(own),
        "signer": as_dict(own.get("signature_info")).get("common_name"),
        "digital_source_types": [],
        "failures": list(dict.fromkeys(failures)),
    }


def _ingredient_deltas(results: dict) -> dict[tuple[str, str], dict]:
    """(manifest label, ingredient assertion label) -> that ingredient's validation deltas."""
    found = {}
    for item in map(as_dict, as_list(results.get("ingredientDeltas"))):
        uri = str(item.get("ingredientAssertionURI", ""))
        manifest, _, assertion = uri.removeprefix("self#jumbf=/c2pa/").partition("/c2pa.assertions/")
        found[(manifest, assertion)] = as_dict(item.get("validationDeltas"))
    return found
