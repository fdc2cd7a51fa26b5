"""Files: safetensors weights and atomic writes (checkpoint), disk failures as one line (storage), a user's text file
read as UTF-8 or refused in one line (textfile). The bottom layer: it imports only kdkit.errors.
"""
