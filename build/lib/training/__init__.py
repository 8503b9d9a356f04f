"""Thin training modules over TRL and PEFT, reading frozen store versions."""
