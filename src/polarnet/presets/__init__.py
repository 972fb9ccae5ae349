"""Built-in study presets (TOML); ``polarnet presets`` lists them."""
