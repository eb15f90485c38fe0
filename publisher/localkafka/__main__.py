from publisher.localkafka import main

raise SystemExit(main())
