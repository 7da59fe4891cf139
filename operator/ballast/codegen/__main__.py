"""`python -m ballast.codegen`: see ballast.codegen."""

import sys

from ballast.codegen import main

sys.exit(main())
