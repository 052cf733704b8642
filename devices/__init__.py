"""Edge targets: device profiles, transports (local, SSH, adb) and an emulated Raspberry Pi."""
