"""`python -m ptbench.cli` is `ptbench` (for launchers such as `torchrun -m ptbench.cli run ...`)."""

from ptbench.cli import main

raise SystemExit(main())
