"""Timing constraints for place and route, installed as data (see README.md here)."""
