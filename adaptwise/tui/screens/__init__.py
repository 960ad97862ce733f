"""One module per screen, in the order the user meets them."""
