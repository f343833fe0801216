"""The embeddable widget, its demo page and the starter questions of an empty chat."""
