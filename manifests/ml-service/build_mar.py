"""Init container of the resnet Deployment: build the model archive TorchServe registers.

Takes TorchServe's published ResNet-18 archive (model.py, ImageNet weights, class names) and
makes greenwise_handler.py its handler, writing MODEL_STORE/resnet-18.mar. To avoid the
download, point MAR_URL at your own copy (file:// works with a mounted volume).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

SOURCE = os.environ.get("MAR_URL", "https://torchserve.pytorch.org/mar_files/resnet-18.mar")
STORE = Path(os.environ.get("MODEL_STORE", "/home/model-server/model-store"))
HANDLER = Path(__file__).resolve().parent / "greenwise_handler.py"
MANIFEST = "MAR-INF/MANIFEST.json"


def rebuild(source: Path, out: Path) -> None:
    """Copy the archive, with the handler added and named in its manifest."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == MANIFEST:
                manifest = json.loads(data)
                manifest["model"]["handler"] = HANDLER.name
                data = json.dumps(manifest, indent=2).encode()
            if item.filename != HANDLER.name:
                zout.writestr(item, data)
        zout.write(HANDLER, HANDLER.name)


def main() -> None:
    target = STORE / "resnet-18.mar"
    if target.exists():  # the volume outlived a container restart
        return
    STORE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=STORE) as tmp:
        source = Path(tmp) / "source.mar"
        with urllib.request.urlopen(SOURCE, timeout=120) as r, source.open("wb") as f:
            shutil.copyfileobj(r, f)
        out = Path(tmp) / target.name
        rebuild(source, out)
        out.replace(target)
    print(f"built {target} from {SOURCE} with handler {HANDLER.name}", flush=True)


if __name__ == "__main__":
    main()
