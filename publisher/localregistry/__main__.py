from publisher.localregistry import main

raise SystemExit(main())
