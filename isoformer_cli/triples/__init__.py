"""Pure-Python biology: from a parsed transcript and a genome to its DNA/RNA/protein triple.

Never imports torch. One module owns each convention of DESIGN.md section 3.
"""
