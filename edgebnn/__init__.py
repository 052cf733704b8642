"""The ``edgebnn`` command line: ``cli`` dispatches to the stages' commands and turns user errors into
clean exits; the commands that combine stages live here (``convert_cmds``, ``estimate_cmd``,
``pipeline_cmd`` with ``pipeline`` and ``report``), and so does ``zoo_graph``, a service that needs
two stages no stage may import together (CONTRIBUTING.md, "Where commands live")."""
