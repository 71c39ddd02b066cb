"""What is tested and served: experiments, variants, rendering, landing page, signup, admin."""
