"""Streamlit + Plotly dashboard over the marts, the stream's tables, the quality score and monitoring."""
