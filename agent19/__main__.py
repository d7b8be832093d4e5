from agent19.cli import main

raise SystemExit(main())
