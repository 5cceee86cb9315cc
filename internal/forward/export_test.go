package forward

// OpPublished is the op byte of a home's answer to a publish (tests drop
// it to stall a publisher).
const OpPublished = opPublished
