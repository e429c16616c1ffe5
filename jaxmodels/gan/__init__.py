"""GAN Dissection (Bau et al., ICLR 2019): a progressive-GAN-style generator, its training, dissection and interventions."""
