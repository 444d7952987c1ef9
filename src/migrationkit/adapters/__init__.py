"""Adapters: concrete stores behind the ports. They import ports and domain, never each other."""
