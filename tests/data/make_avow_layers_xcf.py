# Made tests/data/avow-layers.xcf with real GIMP 3.0.4 (XCF cannot be written by gimpformats):
#   scripts/gimp-run.sh gimp-console-3.0 -i --batch-interpreter=python-fu-eval \
#     -b "exec(open('tests/data/make_avow_layers_xcf.py').read())" --quit   (then copy from /tmp/xcfgen)
import json

from gi.repository import Gimp, Gio

image = Gimp.Image.new(48, 40, Gimp.ImageBaseType.RGB)
base = Gimp.Layer.new(image, "Background", 48, 40, Gimp.ImageType.RGBA_IMAGE, 100, Gimp.LayerMode.NORMAL)
image.insert_layer(base, None, 0)
ai = Gimp.Layer.new(image, "Background (AI-upscaled x4, avow-compact-x4)", 48, 40, Gimp.ImageType.RGBA_IMAGE, 100,
                    Gimp.LayerMode.NORMAL)
image.insert_layer(ai, None, 0)
record = {"model_name": "avow-compact-x4", "scale": 4}
flags = Gimp.PARASITE_PERSISTENT
image.attach_parasite(Gimp.Parasite.new("avow-provenance", flags, list(json.dumps([record]).encode())))
ai.attach_parasite(Gimp.Parasite.new("avow-provenance", flags, list(json.dumps(record).encode())))
base.attach_parasite(Gimp.Parasite.new("avow-provenance", flags, list(b"\x01\x02 garbage {")))
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path("/tmp/xcfgen/avow-layers.xcf"), None)
