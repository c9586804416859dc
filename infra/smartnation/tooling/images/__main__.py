import sys

from smartnation.tooling.images.main import main

sys.exit(main())
