"""The tutorial's programs (docs/tutorial/), shown there verbatim.

Run each from the repository root as the tutorial says, e.g.
``.venv/bin/python -m examples.tutorial.in_memory``.
"""
