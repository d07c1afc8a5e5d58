/* mosix_ckpt.c - the checkpointer (being written). */
int main(void) { return 1; }
