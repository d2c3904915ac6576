"""Neutron API extensions shipped by Converge (added to ``api_extensions_path`` by the driver)."""
