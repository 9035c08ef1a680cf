"""python -m tgo.claims: README's "claims checked" table."""
from tgo.claims import markdown

print(markdown(), end="")
