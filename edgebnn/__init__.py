"""The ``edgebnn`` command line. Each stage (trainer, converter, runtime, devices) registers its own
subcommands; this package only dispatches and turns user errors into clean exits."""
