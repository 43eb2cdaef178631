"""One module per probe family: figure functions (one per figure) and the section that holds them."""
