from mnaccel.sim.cli import main

raise SystemExit(main())
