"""smartnation Pulumi program: the stack name is the environment name (dev, staging, production)."""

import pulumi

from smartnation.program.city_platform import build
from smartnation.settings import load_settings

build(load_settings(pulumi.get_stack()))
