"""Test doubles that speak real protocols (local peers for the real SDKs)."""
