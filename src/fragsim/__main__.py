from fragsim.cli import main
import sys
sys.exit(main())
