"""Case-selection policies (similarity, learned values, neural Q) and credit assignment."""
