"""Tests of what systemd/ ships: udev rules, the install and uninstall scripts."""
