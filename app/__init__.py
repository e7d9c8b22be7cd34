"""The TokenBridge Lab Gradio app (`python app/main.py`); UI only, everything else is `tokenbridge`."""
