from streamrec.cli import main

raise SystemExit(main())
