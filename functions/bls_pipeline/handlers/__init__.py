"""Lambda entry points: event in, one domain call, small dict out."""
