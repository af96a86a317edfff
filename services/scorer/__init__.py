"""The scorer service: consumes transactions, scores them with the live adapter, produces decisions."""
