"""The healer service: joins late labels, runs heal cycles, publishes adapters, rolls back."""
