"""JupyterHub configuration file of the embedded hub.

All values are computed by :func:`medai.hub.hubconfig.build_hub_settings` and handed over as
JSON in ``$MEDAI_HUB_SETTINGS`` (written by ``medai up``); this file only applies them.
"""

import json
import os

from medai.hub.hubconfig import apply_settings

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

with open(os.environ["MEDAI_HUB_SETTINGS"], encoding="utf-8") as fh:
    apply_settings(c, json.load(fh))
