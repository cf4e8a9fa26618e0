"""The composition root: the `wxarchive` command, `up` and the demo. Only this package imports across every
component; nothing imports it."""
