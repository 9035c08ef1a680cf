"""The report's and the zoo page's figures, one module per metric family as in tgo.geometry, each
with its captions and its part of the pages: `report(results, params)` -> {"text", "figures":
[(name, caption, Figure)], "subsections"} for one model and `zoo(results by model id)` ->
[(name, caption, Figure)] for the zoo, one line per model. `plot` holds what they share."""
from tgo.figures import correlation, information, qk, spectral, tokens

# The pages' sections in order, one per paper: its title, the paper (tgo.claims.PAPERS) whose
# verdicts it shows, and the families whose text and figures it holds.
SECTIONS = (("Spectral geometry", "tgo1", (spectral,)),
            ("Token geometry", "info_geom", (tokens, correlation)),
            ("Neuron statistics and attention", "probing", (information, qk)))
