"""What is tested and served: experiments and variants, rendering, landing page and signup, admin."""
