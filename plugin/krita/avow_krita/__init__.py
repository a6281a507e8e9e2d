"""Avow for Krita: Tools > Scripts > AI Upscale (disclosed)... and Export with Content Credentials...

Runs in Krita's own Python (PyQt5 and the standard library); torch, c2pa and exiv2 run in Avow's
worker process. Installed by ``avow install krita``.
"""

from krita import Krita

from .extension import AvowExtension
from .warm import survive_broken_pipes

survive_broken_pipes()  # Krita imports its plugins on the main thread

EXTENSION = AvowExtension(Krita.instance())
Krita.instance().addExtension(EXTENSION)
